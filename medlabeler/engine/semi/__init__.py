"""Semi-supervised training: supervised baseline, Mean Teacher (+ relation consistency),
FixMatch, cross teaching and the SRCL joint objective."""
