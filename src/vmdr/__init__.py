"""vmdr: disaster recovery for VMware VMs between vSphere and Azure, with delta failback."""

__version__ = "0.1.0"
