//! Analyses over a plain-data sample: accounting identities, decompositions, VM figures.

pub mod accounting;
pub mod glossary;
pub mod ksm;
pub mod leaks;
pub mod overcommit;
pub mod procs;
pub mod series;

pub mod view;
pub mod vm;
