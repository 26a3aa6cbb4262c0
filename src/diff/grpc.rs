//! gRPC messages read for comparison. A gRPC body is a run of
//! length-prefixed messages; with the services' descriptors
//! (`diff.grpc.descriptor_set`) each message is decoded and written as JSON
//! with the `.proto` field names, so differences show by field path
//! (`body:/items/0/price`) exactly like JSON bodies. Without descriptors,
//! or for a method they do not describe, the bodies are compared as bytes.

use std::path::Path;

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

/// The services a descriptor set describes.
#[derive(Debug)]
pub struct GrpcSchema {
    pool: DescriptorPool,
}

impl GrpcSchema {
    /// Reads a `FileDescriptorSet` (`protoc --include_imports
    /// --descriptor_set_out=FILE`).
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let pool = DescriptorPool::decode(bytes).map_err(|e| {
            format!("not a FileDescriptorSet ({e}); make one with protoc --include_imports --descriptor_set_out=FILE")
        })?;
        if pool.services().next().is_none() {
            return Err("describes no service; include the .proto files that declare the services".into());
        }
        Ok(Self { pool })
    }

    /// Services described, for `check`.
    pub fn service_names(&self) -> Vec<String> {
        self.pool.services().map(|s| s.full_name().to_string()).collect()
    }

    /// The method a request path names (`/shop.Catalog/GetItem`).
    fn method(&self, path: &str) -> Option<prost_reflect::MethodDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let method = method.split('?').next()?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }

    /// The response message of the method a request path names.
    pub fn response_of(&self, path: &str) -> Option<MessageDescriptor> {
        self.method(path).map(|m| m.output())
    }

    /// Whether the method streams either way: such calls are not mirrored
    /// (a mirror would hold a stream open for nothing it can compare whole).
    pub fn streams(&self, path: &str) -> bool {
        self.method(path)
            .is_some_and(|m| m.is_client_streaming() || m.is_server_streaming())
    }
}

/// The messages of a gRPC body, in order.
pub fn frames(body: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut rest = body;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 5 {
            return Err(format!(
                "{} bytes left where a 5-byte message prefix belongs",
                rest.len()
            ));
        }
        if rest[0] != 0 {
            return Err("a compressed message (grpc-encoding); compared as bytes".into());
        }
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let end = 5usize
            .checked_add(len)
            .filter(|e| *e <= rest.len())
            .ok_or_else(|| format!("a message says {len} bytes but {} are left", rest.len() - 5))?;
        out.push(&rest[5..end]);
        rest = &rest[end..];
    }
    Ok(out)
}

/// The body's messages as JSON: the message itself when there is one, an
/// array of them for a stream.
pub fn to_json(descriptor: &MessageDescriptor, body: &[u8]) -> Result<String, String> {
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    let mut values = Vec::new();
    for frame in frames(body)? {
        let msg = DynamicMessage::decode(descriptor.clone(), frame)
            .map_err(|e| format!("not a {} message: {e}", descriptor.full_name()))?;
        let mut ser = serde_json::Serializer::new(Vec::new());
        msg.serialize_with_options(&mut ser, &options)
            .map_err(|e| e.to_string())?;
        values.push(String::from_utf8(ser.into_inner()).map_err(|e| e.to_string())?);
    }
    Ok(match values.len() {
        1 => values.pop().unwrap_or_default(),
        _ => format!("[{}]", values.join(",")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_and_checked() {
        let body = [0, 0, 0, 0, 2, 8, 1, 0, 0, 0, 0, 0];
        let f = frames(&body).unwrap();
        assert_eq!(f, vec![&[8u8, 1][..], &[][..]]);
        assert!(frames(&[0, 0, 0, 0, 9, 1]).unwrap_err().contains("says 9 bytes"));
        assert!(frames(&[1, 0, 0, 0, 0]).unwrap_err().contains("compressed"));
    }
}
