"""Kubernetes: manifests rendered from the spec, their checks, `kubectl` rollouts and local rehearsals."""
