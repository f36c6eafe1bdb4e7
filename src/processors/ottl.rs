//! OTTL conditions (placeholder in the skeleton; being written).
