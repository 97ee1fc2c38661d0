"""Portfolio: positions and P&L (see qlcore.model), round-trip trades, metrics and results."""
