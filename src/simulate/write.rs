//! Writing simulated acquisitions to disk (being written).
