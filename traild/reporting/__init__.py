"""Live results for the rollout: metrics, the gate, the backtest comparison, the HTML report."""
