# ESP32-S3 window keypad, five keys wired to ground with internal pull-ups.
# Key order: index 0 = 非常满意 (5 stars) ... index 4 = 非常不满意 (1 star).
KEY_PINS = (4, 5, 6, 7, 15)
KEYS_ACTIVE_LOW = True  # pressed pulls the pin to ground
LED_PIN = 48
BUZZER_PIN = 21
DISPLAY = "ssd1306"  # 0.96" OLED module, 128x64, I2C (hardware/ssd1306.py)
DISPLAY_WIDTH = 128
DISPLAY_HEIGHT = 64
DISPLAY_ADDR = 0x3C  # 0x3D when the module's address jumper is moved
I2C_ID = 0
I2C_SDA = 8
I2C_SCL = 9
UART_TX = 17  # window-PC link (a USB-serial adapter on the PC side)
UART_RX = 18
