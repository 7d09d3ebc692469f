namespace SparseDecode.Server.Serving;

/// <summary>The prompt formats the server renders. Plain is the documented fallback for a model without a
/// (recognized) chat template, such as the bundled base model.</summary>
public enum ChatFormat
{
    Plain,
    Llama3,
    ChatMl,
    Mistral,
}
