namespace SparseDecode.Selection;

/// <summary>Whether a selection is made for each query head, or once per KV head for all query heads of its
/// group (one gather then serves the whole group under GQA).</summary>
public enum SelectionGranularity
{
    QueryHead,
    KvHead,
}
