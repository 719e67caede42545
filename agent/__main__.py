"""`python -m agent` is the same as the `flowglass` command."""

from __future__ import annotations

from agent.cli import main

if __name__ == "__main__":
    main()
