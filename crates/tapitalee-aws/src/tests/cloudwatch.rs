//! CloudWatch alarm and metric analyses, scripted.
