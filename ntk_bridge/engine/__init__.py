"""The kernel engine: infinite-width kernels of fully connected (:mod:`.fc`) and convolutional
(:mod:`.conv_engine`, :mod:`.conv_kernels`) networks, finite networks and their parameterisations
(:mod:`.networks`, :mod:`.parameterisation`), empirical NTKs (:mod:`.empirical`), fast maths and the
float64 context (:mod:`.precision`). Imports only the ground floor (errors, io).
"""
