"""The frontline proxy: per-core NGINX instances and their one-core-at-a-time release."""
