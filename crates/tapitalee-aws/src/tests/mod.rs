//! Scripted-response tests (aws-smithy-mocks).
