"""Pure models and scoring over batches. Nothing here imports Beam."""
