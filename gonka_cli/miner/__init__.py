"""The mining loop (`gonka mine`): arrives with its own issue."""
