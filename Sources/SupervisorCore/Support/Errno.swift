import Glibc

/// Returns the text of the current errno, for error messages.
func errnoText(_ code: Int32 = errno) -> String {
    String(cString: strerror(code))
}
