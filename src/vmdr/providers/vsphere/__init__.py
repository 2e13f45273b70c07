"""vSphere provider: control of the on-premises site through pyVmomi."""
