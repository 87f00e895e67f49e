# One hardware interface, three platforms. load(name) imports only the one in use: a node
# pays heap for every module it imports.


def load(platform):
    if platform == "esp32":
        from hal import esp32 as mod
    elif platform == "rp2":
        from hal import rp2 as mod
    else:
        from hal import sim as mod
    return mod
