"""The pipeline graph: receivers → processors → fan-out → exporters, and the counters every
component gets for free."""
