"""`p2pbak mount`: the snapshots as a read-only FUSE file system (pyfuse3), laid out as
restic lays out its mounts; file data is read through the data path's BlobReader."""
