"""Hardware profiling (`gonka bench`): arrives with its own issue."""
