"""lava-deploy: QCFS-trained networks deployed as bit-exact spiking networks on Lava.

One subpackage per stage of the data's journey, each with the function of its
CLI verb, on top of ``data`` (datasets), ``network`` (the integer network's
graph, netx file and exact reference) and ``qcfs`` (the ANN's modules); see
``docs/architecture.md``::

    from lava_deploy.train import TrainConfig, train        # lava-deploy train
    from lava_deploy.convert import convert_model            # (inside export; your own models)
    from lava_deploy.export import export, info              # lava-deploy export / info
    from lava_deploy.simulate import simulate                # lava-deploy simulate
    from lava_deploy.compare import compare, write_plots     # lava-deploy compare [--plots]
    from lava_deploy.check import check                      # lava-deploy check (Loihi 2 fit, energy)
"""
__version__ = "0.1.0"
