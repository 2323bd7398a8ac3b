"""Self-supervised pretraining: SimCLR, PCL, GraVIS and the curriculum runner spec."""
