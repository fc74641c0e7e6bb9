"""The embedded AWS: what runs locally in place of an AWS account."""
