//! Opaque page cursors. A cursor names the query scope it was issued for (a tenant's partition, a
//! bucket), and is refused anywhere else: a cursor from tenant A's listing cannot page through
//! tenant B's.

use super::StoreError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    scope: String,
    position: T,
}

impl Cursor {
    pub fn from_token(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn token(&self) -> &str {
        &self.0
    }

    pub(crate) fn encode<T: Serialize>(scope: &str, position: &T) -> Result<Self, StoreError> {
        let json = serde_json::to_vec(&Envelope {
            scope: scope.to_owned(),
            position,
        })
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(json)))
    }

    pub(crate) fn decode<T: for<'de> Deserialize<'de>>(&self, scope: &str) -> Result<T, StoreError> {
        let bytes = URL_SAFE_NO_PAD.decode(&self.0).map_err(|_| StoreError::BadCursor)?;
        let env: Envelope<T> = serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)?;
        if env.scope != scope {
            return Err(StoreError::BadCursor);
        }
        Ok(env.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_only_works_in_its_scope() {
        let c = Cursor::encode("T#a", &"M#5").expect("encode");
        assert_eq!(c.decode::<String>("T#a").expect("same scope"), "M#5");
        assert!(matches!(c.decode::<String>("T#b"), Err(StoreError::BadCursor)));
        assert!(matches!(
            Cursor::from_token("garbage!").decode::<String>("T#a"),
            Err(StoreError::BadCursor)
        ));
    }
}
