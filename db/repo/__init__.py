"""Repository functions: one unit of work each, tenant-scoped where a user is behind them."""
