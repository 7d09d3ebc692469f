namespace SparseDecode.Server.Protocol;

/// <summary>A request the server refuses, answered with OpenAI's error object
/// {"error":{"message","type","param","code"}} and the given HTTP status.</summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null, string? type = null)
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type ?? status switch
    {
        429 => "rate_limit_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };

    public static ApiException BadRequest(string message, string? param = null, string? code = null) =>
        new(400, message, param, code);
}
