namespace SparseDecode.Selection;

/// <summary>Layer numbers given for 32-layer Llama in the papers, scaled to a model's depth.</summary>
public static class Depth
{
    /// <summary>round(layerOf32 · layers / 32), half away from zero.</summary>
    public static int Scale(int layerOf32, int layers) =>
        (int)Math.Round(layerOf32 * layers / 32.0, MidpointRounding.AwayFromZero);

    /// <summary>Dense leading layers for a model of `layers` (2 of 32 by default), at least 1 and below `layers`
    /// where the model has more than one layer.</summary>
    public static int DenseLayers(int layers, int of32 = 2) => Math.Clamp(Scale(of32, layers), Math.Min(1, layers - 1), Math.Max(0, layers - 1));
}
