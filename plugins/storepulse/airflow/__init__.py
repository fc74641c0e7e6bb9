"""What DAG files share: default arguments, conventions, and the project's operators and hooks."""
