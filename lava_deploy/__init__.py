"""lava-deploy: QCFS-trained networks deployed as bit-exact spiking networks on Lava."""

__version__ = "0.1.0"
