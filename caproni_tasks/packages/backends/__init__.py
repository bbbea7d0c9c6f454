"""Repository backends side by side, each opened through
`caproni_tasks.packages.repository.open_repository` by URL scheme."""
