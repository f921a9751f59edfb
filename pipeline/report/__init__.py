"""The static HTML report: page assembly, figures, formatting."""
