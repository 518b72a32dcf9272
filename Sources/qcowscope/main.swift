// Entry point: parse, run, and map ArgumentParser's usage errors to exit status 2.
Qcowscope.runAndExit()
