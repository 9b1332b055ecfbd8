"""Assembly of stages from a config, the CLI, runner options and funnel reports."""
