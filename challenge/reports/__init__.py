"""What a user reads: leaderboards (terminal and HTML), one result as a table, and W&B runs."""
