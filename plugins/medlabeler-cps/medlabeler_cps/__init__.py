"""A medlabeler learning-method plugin: cross pseudo supervision (Chen et al., CVPR 2021)."""
