//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) for the
//! services mcp-warden serves on its gRPC listener.
//!
//! The descriptors come from `proto/` (the vendored Envoy ext_authz and
//! ext_proc protos plus our `mcp_warden.v1.Decision` metadata contract),
//! compiled by `build.rs` with protox into a FileDescriptorSet, and from
//! tonic-health's descriptor of `grpc.health.v1`. With reflection mounted,
//! `grpcurl -plaintext HOST:9191 list` and
//! `grpcurl -plaintext HOST:9191 describe mcp_warden.v1.Decision` work
//! without local proto files.

use tonic_reflection::server::{
    Builder, Error, v1::ServerReflection, v1::ServerReflectionServer,
    v1alpha::ServerReflection as ServerReflectionV1Alpha,
    v1alpha::ServerReflectionServer as ServerReflectionServerV1Alpha,
};

/// Encoded FileDescriptorSet of everything under `proto/`, imports included.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mcp_warden_descriptor.bin"));

/// Fully-qualified names of the services advertised by `ListServices`.
///
/// Both reflection versions are listed: mount [`service`] and
/// [`service_v1alpha`] together.
pub const SERVICE_NAMES: &[&str] = &[
    "envoy.service.auth.v3.Authorization",
    "envoy.service.ext_proc.v3.ExternalProcessor",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

fn builder() -> Builder<'static> {
    SERVICE_NAMES.iter().fold(
        Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |builder, name| builder.with_service_name(*name),
    )
}

/// The `grpc.reflection.v1.ServerReflection` service.
///
/// # Errors
///
/// Fails only if an embedded descriptor set cannot be decoded, which would be
/// a build defect (the unit tests cover it).
pub fn service() -> Result<ServerReflectionServer<impl ServerReflection>, Error> {
    builder().build_v1()
}

/// The `grpc.reflection.v1alpha.ServerReflection` service, for older clients
/// (grpc_cli, some GUI tools) that do not speak v1.
///
/// # Errors
///
/// As for [`service`].
pub fn service_v1alpha() -> Result<ServerReflectionServerV1Alpha<impl ServerReflectionV1Alpha>, Error> {
    builder().build_v1alpha()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use prost_types::FileDescriptorSet;
    use prost_types::field_descriptor_proto::{Label, Type};

    fn has_symbol(set: &FileDescriptorSet, package: &str, name: &str) -> bool {
        set.file.iter().any(|file| {
            file.package() == package
                && (file.service.iter().any(|s| s.name() == name) || file.message_type.iter().any(|m| m.name() == name))
        })
    }

    #[test]
    fn descriptor_set_holds_our_services_and_contract() {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        assert!(has_symbol(&set, "envoy.service.auth.v3", "Authorization"));
        assert!(has_symbol(&set, "envoy.service.ext_proc.v3", "ExternalProcessor"));
        assert!(has_symbol(&set, "mcp_warden.v1", "Decision"));

        let decision = set
            .file
            .iter()
            .flat_map(|file| &file.message_type)
            .find(|m| m.name() == "Decision")
            .expect("Decision message");
        // The documented contract is the Rust type's: the keys a fully populated
        // `DecisionMetadata` writes (its core tests), in order, each a single string.
        let fields: Vec<&str> = decision.field.iter().map(|f| f.name()).collect();
        assert_eq!(fields, warden_core::decision::DecisionMetadata::KEYS);
        for f in &decision.field {
            assert_eq!((f.r#type(), f.label()), (Type::String, Label::Optional), "{}", f.name());
        }
    }

    #[test]
    fn descriptor_set_is_self_contained() {
        let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
        let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
        for file in &set.file {
            for dep in &file.dependency {
                assert!(names.contains(&dep.as_str()), "{} imports missing {dep}", file.name());
            }
        }
    }

    #[test]
    fn reflection_services_build() {
        service().expect("v1 reflection builds");
        service_v1alpha().expect("v1alpha reflection builds");
    }
}
