"""matplotlib with the Agg backend, so plots render without a display (CI, servers)."""


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
