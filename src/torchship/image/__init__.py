"""The image stage: a build context from the verified .mar, a builder (docker | podman | buildah), a run of
the built image on loopback that re-checks served parity, and the image.json record."""
