//! Analyses over a plain-data sample: accounting identities, decompositions, VM figures.
