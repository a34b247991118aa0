"""What runs the models: fitting, evaluation, comparisons, rates and sweeps (the README's layer map)."""
