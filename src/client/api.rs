//! Typed access to one resource kind through the client, with paths derived from k8s-openapi's resource
//! metadata (`/api/v1/namespaces/{ns}/pods`, `/apis/apps/v1/deployments`, …).

use std::marker::PhantomData;

use http::Method;
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{Client, ClientError};

/// The collection path of a kind, in one namespace or across all.
pub fn collection_path<K: Resource>(namespace: Option<&str>) -> String {
    let root = if K::GROUP.is_empty() {
        format!("/api/{}", K::VERSION)
    } else {
        format!("/apis/{}/{}", K::GROUP, K::VERSION)
    };
    match namespace {
        Some(ns) => format!("{root}/namespaces/{ns}/{}", K::URL_PATH_SEGMENT),
        None => format!("{root}/{}", K::URL_PATH_SEGMENT),
    }
}

pub struct Api<K> {
    client: Client,
    namespace: Option<String>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Api {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            kind: PhantomData,
        }
    }
}

fn decode<K: DeserializeOwned>(value: Value) -> Result<K, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Decode(e.to_string()))
}

fn encode<K: Serialize>(obj: &K) -> Result<Value, ClientError> {
    serde_json::to_value(obj).map_err(|e| ClientError::Decode(e.to_string()))
}

impl<K> Api<K>
where
    K: Resource + Serialize + DeserializeOwned,
{
    /// Cluster-scoped kinds, or every namespace of a namespaced kind (list only).
    pub fn all(client: Client) -> Self {
        Api {
            client,
            namespace: None,
            kind: PhantomData,
        }
    }

    pub fn namespaced(client: Client, namespace: &str) -> Self {
        Api {
            client,
            namespace: Some(namespace.to_string()),
            kind: PhantomData,
        }
    }

    pub fn collection(&self) -> String {
        collection_path::<K>(self.namespace.as_deref())
    }

    fn item(&self, name: &str) -> String {
        format!("{}/{name}", self.collection())
    }

    pub async fn get(&self, name: &str) -> Result<K, ClientError> {
        decode(self.client.get(&self.item(name)).await?)
    }

    /// `None` when the object does not exist.
    pub async fn get_opt(&self, name: &str) -> Result<Option<K>, ClientError> {
        match self.get(name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The items matching `label_selector` (empty: all) and the list's resourceVersion.
    pub async fn list(&self, label_selector: &str) -> Result<(Vec<K>, String), ClientError> {
        let mut path = self.collection();
        if !label_selector.is_empty() {
            path.push_str("?labelSelector=");
            path.extend(form_urlencoded::byte_serialize(label_selector.as_bytes()));
        }
        let mut list = self.client.get(&path).await?;
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let items = match list["items"].take() {
            Value::Array(items) => items
                .into_iter()
                .map(decode)
                .collect::<Result<Vec<K>, _>>()?,
            _ => Vec::new(),
        };
        Ok((items, rv))
    }

    pub async fn create(&self, obj: &K) -> Result<K, ClientError> {
        decode(
            self.client
                .create(&self.collection(), &encode(obj)?)
                .await?,
        )
    }

    pub async fn replace(&self, name: &str, obj: &K) -> Result<K, ClientError> {
        decode(self.client.update(&self.item(name), &encode(obj)?).await?)
    }

    pub async fn replace_status(&self, name: &str, obj: &K) -> Result<K, ClientError> {
        let path = format!("{}/status", self.item(name));
        decode(self.client.update(&path, &encode(obj)?).await?)
    }

    pub async fn merge_patch(&self, name: &str, patch: &Value) -> Result<K, ClientError> {
        decode(self.client.merge_patch(&self.item(name), patch).await?)
    }

    pub async fn merge_patch_status(&self, name: &str, patch: &Value) -> Result<K, ClientError> {
        let path = format!("{}/status", self.item(name));
        decode(self.client.merge_patch(&path, patch).await?)
    }

    /// Deletes with `options` (a DeleteOptions body, e.g. a propagationPolicy or preconditions); a missing
    /// object is not an error.
    pub async fn delete(&self, name: &str, options: &Value) -> Result<(), ClientError> {
        match self
            .client
            .request(
                Method::DELETE,
                &self.item(name),
                Some(options),
                "application/json",
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn create_subresource(
        &self,
        name: &str,
        subresource: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let path = format!("{}/{subresource}", self.item(name));
        self.client.create(&path, body).await
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::collection_path;

    #[test]
    fn paths_follow_group_and_scope() {
        assert_eq!(
            collection_path::<Pod>(Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(collection_path::<Node>(None), "/api/v1/nodes");
        assert_eq!(
            collection_path::<Deployment>(Some("x")),
            "/apis/apps/v1/namespaces/x/deployments"
        );
    }
}
