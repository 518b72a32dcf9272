print("qcowscope: not yet")
