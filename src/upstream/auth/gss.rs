//! Negotiate tokens from the user's Kerberos ticket cache, through the system's GSSAPI
//! library (MIT's `libgssapi_krb5.so.2`, Heimdal's `libgssapi.so.3`, macOS's GSS framework).
//!
//! The library is opened at run time (`libloading`) rather than linked: the `libgssapi`
//! crate needs Kerberos headers and libclang to build, which would break `cargo build` on a
//! machine with only the Rust toolchain. Loading it when a proxy first offers Negotiate
//! costs a millisecond once and turns "no Kerberos here" into a clear message instead of a
//! build failure. Seven functions are declared, exactly as RFC 2744 gives them.
//!
//! Calls block (the library may ask the KDC for a service ticket), so callers run
//! [`Session`] on a blocking thread.

use std::ffi::c_void;
use std::ptr;
use std::sync::OnceLock;

/// `OM_uint32`.
type Om = u32;

/// `gss_OID_desc`.
#[repr(C)]
struct OidDesc {
    length: Om,
    elements: *const c_void,
}

/// `gss_buffer_desc`.
#[repr(C)]
struct BufferDesc {
    length: usize,
    value: *mut c_void,
}

impl BufferDesc {
    fn empty() -> BufferDesc {
        BufferDesc {
            length: 0,
            value: ptr::null_mut(),
        }
    }
}

type Name = *mut c_void;
type Context = *mut c_void;

type ImportName = unsafe extern "C" fn(*mut Om, *const BufferDesc, *const OidDesc, *mut Name) -> Om;
type InitSecContext = unsafe extern "C" fn(
    *mut Om,
    *mut c_void, // claimant credential: GSS_C_NO_CREDENTIAL, the default ticket cache
    *mut Context,
    Name,
    *const OidDesc,
    Om,                // req_flags
    Om,                // time_req
    *const c_void,     // channel bindings: none
    *const BufferDesc, // input token
    *mut *const OidDesc,
    *mut BufferDesc,
    *mut Om,
    *mut Om,
) -> Om;
type ReleaseBuffer = unsafe extern "C" fn(*mut Om, *mut BufferDesc) -> Om;
type ReleaseName = unsafe extern "C" fn(*mut Om, *mut Name) -> Om;
type DeleteSecContext = unsafe extern "C" fn(*mut Om, *mut Context, *mut BufferDesc) -> Om;
type DisplayStatus =
    unsafe extern "C" fn(*mut Om, Om, i32, *const OidDesc, *mut Om, *mut BufferDesc) -> Om;

/// The library and the functions taken from it; kept for the life of the process.
struct Api {
    /// Kept open for the process's life (the function pointers point into it).
    _library: Box<dyn std::any::Any + Send + Sync>,
    import_name: ImportName,
    init_sec_context: InitSecContext,
    release_buffer: ReleaseBuffer,
    release_name: ReleaseName,
    delete_sec_context: DeleteSecContext,
    display_status: DisplayStatus,
}

/// Where GSSAPI lives, in the order tried.
#[cfg(feature = "negotiate")]
const LIBRARIES: &[&str] = &[
    "libgssapi_krb5.so.2",
    "libgssapi.so.3",
    "/System/Library/Frameworks/GSS.framework/GSS",
    "libgssapi_krb5.so",
];

/// `GSS_C_NT_HOSTBASED_SERVICE`, 1.2.840.113554.1.2.1.4: `service@host`.
static HOSTBASED: [u8; 10] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x01, 0x04];
/// SPNEGO, 1.3.6.1.5.5.2: the mechanism browsers use for HTTP Negotiate.
static SPNEGO: [u8; 6] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// Kerberos 5, 1.2.840.113554.1.2.2: asked directly only to learn why SPNEGO failed (SPNEGO
/// reports "cannot find mechanisms to negotiate" where Kerberos names the reason).
static KRB5: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];

const GSS_S_COMPLETE: Om = 0;
const GSS_S_CONTINUE_NEEDED: Om = 1;
const GSS_C_GSS_CODE: i32 = 1;
const GSS_C_MECH_CODE: i32 = 2;

fn oid(bytes: &'static [u8]) -> OidDesc {
    OidDesc {
        length: bytes.len() as Om,
        elements: bytes.as_ptr().cast(),
    }
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// Whether GSSAPI could be loaded here (`Err` says which libraries were tried).
pub fn available() -> Result<(), String> {
    api().map(|_| ())
}

fn api() -> Result<&'static Api, String> {
    API.get_or_init(load).as_ref().map_err(Clone::clone)
}

#[cfg(not(feature = "negotiate"))]
fn load() -> Result<Api, String> {
    Err("this diagproxy was built without the `negotiate` feature (cargo build --features negotiate)".into())
}

#[cfg(feature = "negotiate")]
fn load() -> Result<Api, String> {
    let mut tried = Vec::new();
    for name in LIBRARIES {
        // SAFETY: loading a system GSSAPI library runs its initialisers, which expect no
        // more than a normal process.
        match unsafe { libloading::Library::new(name) } {
            Ok(library) => return symbols(library).map_err(|e| format!("{name}: {e}")),
            Err(e) => tried.push(format!("{name}: {e}")),
        }
    }
    Err(format!(
        "no GSSAPI library (install MIT Kerberos' libgssapi-krb5-2, or Heimdal): {}",
        tried.join("; ")
    ))
}

#[cfg(feature = "negotiate")]
fn symbols(library: libloading::Library) -> Result<Api, libloading::Error> {
    // SAFETY: the types are RFC 2744's C bindings of these functions.
    unsafe {
        let import_name = *library.get::<ImportName>(b"gss_import_name\0")?;
        let init_sec_context = *library.get::<InitSecContext>(b"gss_init_sec_context\0")?;
        let release_buffer = *library.get::<ReleaseBuffer>(b"gss_release_buffer\0")?;
        let release_name = *library.get::<ReleaseName>(b"gss_release_name\0")?;
        let delete_sec_context = *library.get::<DeleteSecContext>(b"gss_delete_sec_context\0")?;
        let display_status = *library.get::<DisplayStatus>(b"gss_display_status\0")?;
        Ok(Api {
            _library: Box::new(library),
            import_name,
            init_sec_context,
            release_buffer,
            release_name,
            delete_sec_context,
            display_status,
        })
    }
}

/// A GSSAPI call that failed: its status codes and the library's own words.
#[derive(Debug, Clone)]
pub struct GssError {
    pub major: u32,
    /// For Kerberos, a `krb5_err.h` code (`KRB5KRB_AP_ERR_SKEW`, …).
    pub minor: u32,
    pub message: String,
}

/// One security context with `HTTP@host`: the first token, then more if the proxy answers
/// with one.
pub struct Session {
    api: &'static Api,
    mechanism: &'static [u8],
    name: Name,
    context: Context,
    /// `HTTP@host`, as asked for.
    pub spn: String,
}

// SAFETY: the handles are used by one thread at a time (the session is moved, never
// shared), which GSSAPI allows.
unsafe impl Send for Session {}

impl Session {
    /// A context for the service principal `HTTP@host` — the proxy's name as the route
    /// gives it, never its address or a CNAME target (krb5.conf's
    /// `dns_canonicalize_hostname` still applies, as it does for browsers).
    pub fn new(host: &str) -> Result<Session, GssError> {
        let api = api().map_err(|message| GssError {
            major: 0,
            minor: 0,
            message,
        })?;
        let spn = format!("HTTP@{host}");
        let input = BufferDesc {
            length: spn.len(),
            value: spn.as_ptr() as *mut c_void,
        };
        let (mut minor, mut name) = (0, ptr::null_mut());
        let hostbased = oid(&HOSTBASED);
        // SAFETY: `input` points at `spn`, alive for the call; `name` is an out-parameter.
        let major = unsafe { (api.import_name)(&mut minor, &input, &hostbased, &mut name) };
        if major != GSS_S_COMPLETE {
            return Err(error(api, major, minor));
        }
        Ok(Session {
            api,
            mechanism: &SPNEGO,
            name,
            context: ptr::null_mut(),
            spn,
        })
    }

    /// The next token: the first with `input` `None`, later ones from the proxy's token.
    /// `true` with it when the context is complete.
    pub fn step(&mut self, input: Option<&[u8]>) -> Result<(Vec<u8>, bool), GssError> {
        let input = input.map(|bytes| BufferDesc {
            length: bytes.len(),
            value: bytes.as_ptr() as *mut c_void,
        });
        let input_ptr = input.as_ref().map_or(ptr::null(), |b| b as *const _);
        let mut output = BufferDesc::empty();
        let (mut minor, mut ret_flags, mut time_rec) = (0, 0, 0);
        let mechanism = oid(self.mechanism);
        // SAFETY: every pointer is to a live local or to the session's own handles.
        let major = unsafe {
            (self.api.init_sec_context)(
                &mut minor,
                ptr::null_mut(),
                &mut self.context,
                self.name,
                &mechanism,
                0,
                0,
                ptr::null(),
                input_ptr,
                ptr::null_mut(),
                &mut output,
                &mut ret_flags,
                &mut time_rec,
            )
        };
        let token = self.take(&mut output);
        match major {
            GSS_S_COMPLETE => Ok((token, true)),
            GSS_S_CONTINUE_NEEDED => Ok((token, false)),
            _ => Err(error(self.api, major, minor)),
        }
    }

    /// Why Kerberos itself cannot make a token for `host` (after SPNEGO failed), if it
    /// cannot.
    pub fn why_not(host: &str) -> Option<GssError> {
        let mut session = match Session::new(host) {
            Ok(s) => s,
            Err(e) => return Some(e),
        };
        session.mechanism = &KRB5;
        session.step(None).err()
    }

    fn take(&self, buffer: &mut BufferDesc) -> Vec<u8> {
        if buffer.value.is_null() {
            return Vec::new();
        }
        // SAFETY: the library filled `buffer` with `length` bytes at `value`.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.value as *const u8, buffer.length) }
            .to_vec();
        let mut minor = 0;
        // SAFETY: the buffer came from the library, which frees it.
        unsafe { (self.api.release_buffer)(&mut minor, buffer) };
        bytes
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut minor = 0;
        // SAFETY: the handles are the session's own, released once.
        unsafe {
            if !self.context.is_null() {
                (self.api.delete_sec_context)(&mut minor, &mut self.context, ptr::null_mut());
            }
            (self.api.release_name)(&mut minor, &mut self.name);
        }
    }
}

/// The library's words for `major` and `minor` (at most 8 lines of each).
fn error(api: &Api, major: Om, minor: Om) -> GssError {
    let mut words = Vec::new();
    for (status, kind) in [(major, GSS_C_GSS_CODE), (minor, GSS_C_MECH_CODE)] {
        if status == 0 {
            continue;
        }
        let mut context = 0;
        for _ in 0..8 {
            let (mut ignored, mut text) = (0, BufferDesc::empty());
            // SAFETY: out-parameters are locals; the text is released below.
            let result = unsafe {
                (api.display_status)(
                    &mut ignored,
                    status,
                    kind,
                    ptr::null(),
                    &mut context,
                    &mut text,
                )
            };
            if result != GSS_S_COMPLETE {
                break;
            }
            if !text.value.is_null() {
                // SAFETY: the library filled `text`.
                let bytes =
                    unsafe { std::slice::from_raw_parts(text.value as *const u8, text.length) };
                let said = String::from_utf8_lossy(bytes);
                words.push(
                    said.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                        .to_string(),
                );
                // SAFETY: released once, by the library that allocated it.
                unsafe { (api.release_buffer)(&mut ignored, &mut text) };
            }
            if context == 0 {
                break;
            }
        }
    }
    words.retain(|w| !w.is_empty());
    GssError {
        major,
        minor,
        message: words.join(": "),
    }
}
