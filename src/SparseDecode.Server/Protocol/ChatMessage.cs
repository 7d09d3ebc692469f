namespace SparseDecode.Server.Protocol;

/// <summary>One turn of a conversation: role is system, user or assistant (developer is read as system).</summary>
public sealed record ChatMessage(string Role, string Content);
