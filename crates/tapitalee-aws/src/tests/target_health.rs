//! ELB target health, scripted.
