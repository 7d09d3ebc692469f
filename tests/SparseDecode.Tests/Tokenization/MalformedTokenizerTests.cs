using System.Text.Json.Nodes;
using SparseDecode.Tokenization;
using Xunit;

namespace SparseDecode.Tests.Tokenization;

/// <summary>Unusable files fail at load time with one sentence that names the file.</summary>
public sealed class MalformedTokenizerTests : IDisposable
{
    readonly TokenizerTestFiles _files = new();

    public void Dispose() => _files.Dispose();

    TokenizerFormatException Fails(string path)
    {
        var e = Assert.Throws<TokenizerFormatException>(() => Tokenizer.FromFile(path));
        Assert.Contains(path, e.Message);
        return e;
    }

    TokenizerFormatException Fails(JsonNode json) => Fails(_files.Write("tokenizer.json", json.ToJsonString()));

    [Fact]
    public void MissingFile()
    {
        string path = Path.Combine(_files.Dir, "nope", "tokenizer.json");
        Assert.Contains("not found", Fails(path).Message);
        var e = Assert.Throws<TokenizerFormatException>(() => Tokenizer.FromDirectory(Path.Combine(_files.Dir, "nope")));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void BadJson() => Assert.Contains("not valid JSON", Fails(_files.Write("tokenizer.json", "{\"model\": {\"type\": \"BPE\",")).Message);

    [Fact]
    public void UnknownModelType()
    {
        var json = TokenizerTestFiles.SentencePiece();
        json["model"]!["type"] = "WordPiece";
        Assert.Contains("WordPiece", Fails(json).Message);
    }

    [Fact]
    public void MergeReferencingUnknownToken()
    {
        var json = TokenizerTestFiles.SentencePiece(new JsonArray("a b", "a zz"));
        var message = Fails(json).Message;
        Assert.Contains("merges[1]", message);
        Assert.Contains("\"zz\"", message);
    }

    [Fact]
    public void MergeWhoseResultIsNotInVocabulary() =>
        Assert.Contains("\"ba\"", Fails(TokenizerTestFiles.SentencePiece(new JsonArray("b a"))).Message);

    [Fact]
    public void UnsupportedComponents()
    {
        var json = TokenizerTestFiles.SentencePiece();
        json["normalizer"] = new JsonObject { ["type"] = "Precompiled", ["precompiled_charsmap"] = "" };
        Assert.Contains("Precompiled", Fails(json).Message);

        json = TokenizerTestFiles.SentencePiece();
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = "(" }, ["behavior"] = "Isolated", ["invert"] = false };
        Assert.Contains("pre_tokenizer.pattern", Fails(json).Message);

        json = TokenizerTestFiles.SentencePiece();
        json["decoder"] = new JsonObject { ["type"] = "CTC" };
        Assert.Contains("CTC", Fails(json).Message);

        json = TokenizerTestFiles.SentencePiece();
        json["model"]!["dropout"] = 0.1;
        Assert.Contains("dropout", Fails(json).Message);
    }

    [Fact]
    public void WrongFieldTypes()
    {
        var json = TokenizerTestFiles.SentencePiece();
        json["model"]!["vocab"]!["a"] = "x";
        Assert.Contains("model.vocab", Fails(json).Message);

        json = TokenizerTestFiles.SentencePiece();
        json["model"]!["unk_token"] = "<nope>";
        Assert.Contains("unk_token", Fails(json).Message);

        json = TokenizerTestFiles.SentencePiece();
        json.Remove("model");
        Assert.Contains("model", Fails(json).Message);

        json = TokenizerTestFiles.SentencePiece();
        json["post_processor"]!["single"]![0]!["SpecialToken"]!["id"] = "<missing>";
        Assert.Contains("<missing>", Fails(json).Message);
    }

    [Fact]
    public void EmptyVocabulary()
    {
        var json = TokenizerTestFiles.SentencePiece(new JsonArray());
        json["model"]!["vocab"] = new JsonObject();
        json["model"]!["unk_token"] = null;
        Assert.EndsWith("tokenizer.json: model.vocab is empty.", Fails(json).Message);
    }

    [Fact]
    public void DuplicateIds()
    {
        var json = TokenizerTestFiles.SentencePiece();
        json["model"]!["vocab"]!["abc"] = 260;
        Assert.EndsWith("tokenizer.json: model.vocab[\"abc\"] is id 260, which model.vocab[\"a\"] already has.", Fails(json).Message);
    }

    [Fact]
    public void TemplateIdOutsideTheVocabulary()
    {
        var json = TokenizerTestFiles.SentencePiece();
        json["post_processor"]!["special_tokens"]!["<s>"]!["ids"] = new JsonArray(128000);
        Assert.EndsWith("tokenizer.json: post_processor.special_tokens[\"<s>\"].ids[0] is id 128000, outside the vocabulary of 266 tokens.",
            Fails(json).Message);
    }

    [Fact]
    public void EosTokenTheTokenizerLacks()
    {
        string tokenizer = _files.Write("m/tokenizer.json", TokenizerTestFiles.SentencePiece().ToJsonString());
        string config = _files.Write("m/tokenizer_config.json", "{\"bos_token\": \"<s>\", \"eos_token\": {\"content\": \"<|im_end|>\"}}");
        var e = Assert.Throws<TokenizerFormatException>(() => Tokenizer.FromDirectory(Path.Combine(_files.Dir, "m")));
        Assert.Equal($"{config}: eos_token \"<|im_end|>\" is not a token of {tokenizer}.", e.Message);
    }

    [Fact]
    public void TokenIdsPastTheModelsVocabularyAreRefusedAtLoad()
    {
        string path = _files.Write("m/tokenizer.json", TokenizerTestFiles.SentencePiece().ToJsonString());
        var tokenizer = Tokenizer.FromFile(path);
        tokenizer.CheckFits(266);
        var e = Assert.Throws<TokenizerFormatException>(() => tokenizer.CheckFits(260));
        Assert.Equal($"{path}: model.vocab[\"abc\"] is id 265, outside the model's vocabulary of 260 (config.json's vocab_size).", e.Message);

        var json = TokenizerTestFiles.ByteLevel();
        var added = Tokenizer.FromFile(_files.Write("b/tokenizer.json", json.ToJsonString()));
        Assert.Contains("added_tokens[0] \"<|endoftext|>\" is id 260", Assert.Throws<TokenizerFormatException>(() => added.CheckFits(260)).Message);
    }

    [Fact]
    public void BadTokenizerConfig()
    {
        _files.Write("m/tokenizer.json", TokenizerTestFiles.SentencePiece().ToJsonString());
        string config = _files.Write("m/tokenizer_config.json", "{\"bos_token\": 5}");
        var e = Assert.Throws<TokenizerFormatException>(() => Tokenizer.FromDirectory(Path.Combine(_files.Dir, "m")));
        Assert.Contains(config, e.Message);
    }
}
