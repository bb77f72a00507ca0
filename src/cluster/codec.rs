//! How message payloads cross the network: serde types encoded with bincode.
//!
//! ractor's `BytesConvertable::from_bytes` cannot fail; a payload that does not decode (a
//! peer running another version, say) becomes the type's `Default`, which every receiver
//! treats as "unknown" rather than acting on it.

/// Implements `ractor::BytesConvertable` for serde types through bincode.
#[macro_export]
macro_rules! bincode_message_payload {
    ($($payload:ty),* $(,)?) => {$(
        impl ractor::BytesConvertable for $payload {
            fn into_bytes(self) -> Vec<u8> {
                bincode::serde::encode_to_vec(&self, bincode::config::standard()).unwrap_or_default()
            }

            fn from_bytes(bytes: Vec<u8>) -> Self {
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard())
                    .map(|(value, _)| value)
                    .unwrap_or_default()
            }
        }
    )*};
}
