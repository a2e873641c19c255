//! NTLMv2 for proxies, through Devolutions' `sspi` (a maintained, pure-Rust SSPI: the same
//! crate verifies passwords on the server side in our tests). NTLM is connection-bound:
//! the negotiate message, the proxy's challenge and the authenticate message travel on one
//! kept-alive connection, which then stays signed in.

use sspi::{
    AuthIdentity, BufferType, ClientRequestFlags, CredentialUse, DataRepresentation, Ntlm,
    SecurityBuffer, Sspi, SspiImpl, Username,
};

use super::Credentials;

/// One NTLM handshake, client side.
pub struct Client {
    ntlm: Ntlm,
    credentials: <Ntlm as SspiImpl>::CredentialsHandle,
}

impl Client {
    pub fn new(user: &Credentials) -> Result<Client, String> {
        let username = Username::new(&user.user, user.domain.as_deref())
            .map_err(|e| format!("--upstream-user {}: {e}", user.display()))?;
        let identity = AuthIdentity {
            username,
            password: user.password.clone().into(),
        };
        let mut ntlm = Ntlm::new();
        let acquired = ntlm
            .acquire_credentials_handle()
            .with_credential_use(CredentialUse::Outbound)
            .with_auth_data(&identity)
            .execute(&mut ntlm)
            .map_err(|e| format!("NTLM credentials: {e}"))?;
        Ok(Client {
            ntlm,
            credentials: acquired.credentials_handle,
        })
    }

    /// The negotiate message (type 1).
    pub fn negotiate(&mut self) -> Result<Vec<u8>, String> {
        self.step(None)
    }

    /// The authenticate message (type 3) answering the proxy's challenge (type 2).
    pub fn authenticate(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String> {
        let challenge = well_formed(challenge)?;
        self.step(Some(&challenge))
    }

    fn step(&mut self, input: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let mut output = vec![SecurityBuffer::new(Vec::new(), BufferType::Token)];
        let mut input =
            input.map(|bytes| vec![SecurityBuffer::new(bytes.to_vec(), BufferType::Token)]);
        let mut builder = self
            .ntlm
            .initialize_security_context()
            .with_credentials_handle(&mut self.credentials)
            .with_context_requirements(ClientRequestFlags::ALLOCATE_MEMORY)
            .with_target_data_representation(DataRepresentation::Native)
            .with_output(&mut output);
        if let Some(input) = input.as_mut() {
            builder = builder.with_input(input);
        }
        self.ntlm
            .initialize_security_context_impl(&mut builder)
            .and_then(|mut generator| generator.resolve_to_result())
            .map_err(|e| format!("NTLM: {e}"))?;
        Ok(output
            .into_iter()
            .next()
            .map(|b| b.buffer)
            .unwrap_or_default())
    }
}

/// The fixed part of a challenge message: signature, type, target name, flags, challenge,
/// reserved, target info (MS-NLMP §2.2.1.2).
const HEADER: usize = 48;
const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// A challenge message `sspi` can read. Some proxies send an old, short form — no target
/// information, a target name pointing outside the message (squid's `ntlm_fake_auth` does
/// both) — which `sspi` rejects and Windows and curl accept; such a message is rebuilt with
/// its flags and server challenge, an empty target name and an empty AV-pair list, which
/// is what NTLMv2 then answers (MS-NLMP §3.3.2 with no AV pairs).
pub fn well_formed(message: &[u8]) -> Result<Vec<u8>, String> {
    if message.len() < 32 || &message[..8] != SIGNATURE || le32(message, 8) != 2 {
        return Err("the proxy's NTLM challenge is not an NTLM challenge message".into());
    }
    if message.len() >= HEADER && field_fits(message, 12) && field_fits(message, 40) {
        return Ok(message.to_vec());
    }
    const NEGOTIATE_VERSION: u32 = 0x0200_0000;
    let flags = le32(message, 20) & !NEGOTIATE_VERSION;
    let mut rebuilt = Vec::with_capacity(HEADER + 4);
    rebuilt.extend_from_slice(SIGNATURE);
    rebuilt.extend_from_slice(&2u32.to_le_bytes());
    let payload = (HEADER as u32).to_le_bytes();
    rebuilt.extend_from_slice(&[0, 0, 0, 0]); // target name: empty
    rebuilt.extend_from_slice(&payload);
    rebuilt.extend_from_slice(&flags.to_le_bytes());
    rebuilt.extend_from_slice(&message[24..32]); // the server challenge
    rebuilt.extend_from_slice(&[0; 8]); // reserved
    rebuilt.extend_from_slice(&[4, 0, 4, 0]); // target info: MsvAvEOL only
    rebuilt.extend_from_slice(&payload);
    rebuilt.extend_from_slice(&[0, 0, 0, 0]);
    Ok(rebuilt)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Whether the (length, offset) field at `at` points inside the message.
fn field_fits(message: &[u8], at: usize) -> bool {
    let len = u16::from_le_bytes([message[at], message[at + 1]]) as usize;
    let offset = le32(message, at + 4) as usize;
    len == 0
        || offset
            .checked_add(len)
            .is_some_and(|end| end <= message.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// What squid 5's `ntlm_fake_auth` sends: 49 bytes, a target name at 0xaaaaaaae.
    const SQUID_FAKE: &str = "TlRMTVNTUAACAAAACQAJAK6qqqoGgggAa7dD/cnlIEkAAAAAAAA6AFdPUktHUk9VUA==";

    fn user() -> Credentials {
        Credentials::parse("CORP\\bob", "pw".into()).unwrap()
    }

    #[test]
    fn a_short_challenge_is_rebuilt_and_answered() {
        let squid = base64::engine::general_purpose::STANDARD
            .decode(SQUID_FAKE)
            .unwrap();
        let rebuilt = well_formed(&squid).unwrap();
        assert_eq!(rebuilt.len(), HEADER + 4);
        assert_eq!(
            &rebuilt[24..32],
            &squid[24..32],
            "the server challenge is kept"
        );
        assert_eq!(
            well_formed(&rebuilt).unwrap(),
            rebuilt,
            "a good one is kept as is"
        );
        let mut client = Client::new(&user()).unwrap();
        let negotiate = client.negotiate().unwrap();
        assert_eq!(&negotiate[..8], SIGNATURE);
        let answer = client.authenticate(&squid).unwrap();
        assert_eq!(&answer[..12], b"NTLMSSP\0\x03\0\0\0");
    }

    #[test]
    fn not_a_challenge_is_an_error() {
        assert!(well_formed(b"hello").is_err());
        assert!(well_formed(&[0u8; 64]).is_err());
        let mut negotiate = SIGNATURE.to_vec();
        negotiate.extend_from_slice(&[1, 0, 0, 0]);
        negotiate.resize(48, 0);
        assert!(well_formed(&negotiate).is_err());
    }
}
