//! TEMP STUB until the quantity module lands.
