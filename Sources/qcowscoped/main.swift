print("qcowscoped: not yet")
