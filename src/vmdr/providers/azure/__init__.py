"""Azure provider: cloud disks as page blobs, cloud VMs, fencing with leases."""
