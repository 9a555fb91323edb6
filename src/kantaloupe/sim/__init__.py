"""The simulator: replays scenarios and production traces through the scheduling core."""
